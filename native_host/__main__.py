"""`python -m native_host`: the launcher's entry point, straight to the host loop (no CLI cost)."""

import sys

from native_host.transport.host import main

sys.exit(main(sys.argv[1:]))

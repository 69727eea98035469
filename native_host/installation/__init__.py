"""Installing the host into browsers: native messaging manifests, launchers, receipts, doctor."""

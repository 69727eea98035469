"""One module per `autosmime` subcommand: argument parsing and printing, no logic of their own."""

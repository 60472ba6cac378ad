"""One module per `seqpt` subcommand, each with `main(argv) -> int`."""

"""The ``imagegate`` command line: thin, it parses arguments and calls the library faces."""

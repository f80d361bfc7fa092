"""What every tfstack program uses at run time: one logging configuration, child processes."""

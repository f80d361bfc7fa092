"""Drive a running tfstack from outside, as its clients do: bounded load over HTTP or pinned gRPC
(`loadgen`), connections that trickle their requests (`slowclients`). Shared by tests/ and bench/;
the programs themselves never import it (the gateway image does not copy it)."""

"""The distributed service: Ray connection, the scheduler actor, the client API, sweep files
and the `kbit` CLI. The only part that imports ray."""

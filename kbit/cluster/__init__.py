"""Ray only: connecting (embedded, `ray://` client, or a cluster address), the scheduler actor with
its typed methods, the client that calls them, and the launcher that runs one Ray task per group
of runs. Everything here is a thin shell around `kbit.service`; nothing else imports ray."""

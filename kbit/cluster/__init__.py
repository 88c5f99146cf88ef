"""Ray only: connecting (embedded, `ray://` client, or a cluster address), the scheduler actor with
its typed methods, the client that calls them, and the pool of long-lived worker actors that runs
each group of runs. Everything here is a thin shell around `kbit.service`; nothing else imports ray."""

"""The service without Ray: the declared API (`ServiceAPI`) and its operations (`Operations`), the
submit gateway over HTTP (`gateway`, `gateway_client`), the scheduler's logic
(`Scheduler`, launching through a `Launcher` protocol) and the body of one worker's group
(`run_group`). Ray shells around these live in `kbit.cluster`."""

from kbit.service.api import ServiceAPI
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.service.operations import Operations
from kbit.service.scheduler import Launcher, Scheduler

__all__ = ["ServiceAPI", "Operations", "Scheduler", "Launcher", "run_group", "noop_evaluate"]

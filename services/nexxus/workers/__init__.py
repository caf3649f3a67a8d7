"""Custom workers: business logic on every committed change (see `BaseWorker`)."""

from nexxus.workers.base import BaseWorker, WorkerEvent

__all__ = ["BaseWorker", "WorkerEvent"]

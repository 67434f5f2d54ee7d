"""Everything a component needs to talk to the API server: the REST client, informers, the
rate-limited work queue, the controller loop, events and leader election."""

from .config import ClientConfig, load_kubeconfig
from .controller import Controller, controller_of, owner_reference, split_key
from .events import EventRecorder
from .informer import Informer, InformerFactory
from .leaderelection import LeaderElector
from .rest import Client, object_key, resource
from .workqueue import WorkQueue

__all__ = [
    "Client", "ClientConfig", "Controller", "EventRecorder", "Informer", "InformerFactory",
    "LeaderElector", "WorkQueue", "controller_of", "load_kubeconfig", "object_key",
    "owner_reference", "resource", "split_key",
]

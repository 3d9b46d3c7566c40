"""A Koji hub fake speaking the real XML-RPC/upload protocol, for kojid task tests.

Use ``from hubfake import HubFake`` (tests/ on the Python path). See
server.py for what the fake models and why.
"""

from .records import Buildroot, CallRecord, Task, UploadChunk
from .server import HubFake

__all__ = ["Buildroot", "CallRecord", "HubFake", "Task", "UploadChunk"]

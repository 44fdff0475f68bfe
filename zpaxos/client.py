"""The public Python API (a stable import path; the code lives in zpaxos.runtime.client).

    from zpaxos.client import Client, ConfigError, propose, load_config
"""

from zpaxos.protocol.core import Outcome
from zpaxos.protocol.register import RegisterOptions, RegOp, RegResult
from zpaxos.runtime.client import Client, Interrupted, NodeStatus, propose
from zpaxos.runtime.config import ClusterConfig, ConfigError, load_config

__all__ = ["Client", "ClusterConfig", "ConfigError", "Interrupted", "NodeStatus", "Outcome",
           "RegOp", "RegResult", "RegisterOptions", "load_config", "propose"]

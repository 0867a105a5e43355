"""The reference device agent (``spillguard agent``): speaks device protocol v1.

- ``client``: the protocol over HTTP (timeouts, retries with backoff and jitter,
  ``Retry-After``, problem documents turned into precise exceptions);
- ``state``: the agent's state directory and its 0600 credential file;
- ``backends``: where posture comes from and how commands are carried out
  (``simulated`` keeps a local JSON state; ``linux`` reads the host it runs on);
- ``loop``: one check-in cycle and the periodic loop around it.

docs/device-protocol.md is the contract; docs/devices.md describes the agent.
"""

from spillguard import __version__

AGENT_VERSION = __version__

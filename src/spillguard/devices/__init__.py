"""Devices: the phones and computers that hold company data, and whether they may.

Per DESIGN.md this module owns enrollment, the device protocol, posture, compliance
policies and their evaluation, commands (lock, locate / lost mode, wipe, selective wipe,
retire), the reference agent and the fleet simulator (story 1, the lost phone).

The pure, database-free pieces (see docs/devices.md):

- ``posture``: the posture a device reports at check-in, validated strictly;
- ``policy``: the compliance policy and its rules, version comparison;
- ``compliance``: posture x policy -> verdict with one plain-words reason per failed
  rule, and which consequences are due once their grace period has passed;
- ``export``: the policy as an Apple configuration profile and as Android Management
  API policy JSON.

The server side (docs/device-protocol.md): ``models``, ``services`` (inventory, groups,
compliance re-evaluation), ``enrollment``, ``protocol``, ``commands`` (queue, report
lost, the maintenance job), ``policies``, and the routes in ``api``.
"""

"""The demo's simulated phones keep checking in, in a background thread.

Each staged phone is a real agent (:class:`~spillguard.devices.agent.loop.Agent`) with
the simulated backend, in its own state directory: it reports its posture, receives the
commands queued for it (lock, lost mode, wipe, ...) and acknowledges them, exactly as
`spillguard agent run --backend simulated` would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import structlog

from spillguard.devices.agent.backends import make_backend
from spillguard.devices.agent.client import AgentError, DeviceClient, RetryPolicy
from spillguard.devices.agent.loop import Agent
from spillguard.devices.agent.state import AgentState

log = structlog.get_logger(__name__)


class PhoneFleet:
    """Background check-ins of the phones in ``state_dirs`` every ``interval`` seconds."""

    def __init__(self, state_dirs: Iterable[Path], interval: float = 5.0) -> None:
        self.state_dirs = list(state_dirs)
        self.interval = interval
        self.stopping = threading.Event()
        self.checkins = 0
        self.thread = threading.Thread(target=self._run, name="demo-phones", daemon=True)

    def start(self) -> PhoneFleet:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(min(seconds, self.interval))

    def run_once(self) -> int:
        """One check-in of every phone still enrolled; how many succeeded."""
        done = 0
        for root in self.state_dirs:
            if self.stopping.is_set():
                break
            state = AgentState(root)
            if not state.is_enrolled():
                continue  # retired: the agent forgot its credential
            config = state.load_config()
            credential = state.load_credential()
            backend = make_backend(config.backend, state.root)
            with DeviceClient(
                config.api_root,
                device_id=credential.device_id,
                credential=credential.secret,
                timeout=10.0,
                retry=RetryPolicy(attempts=2),
                sleep=self._sleep,
                user_agent="spillguard-demo-phone",
            ) as client:
                try:
                    Agent(state, backend, client).run_once()
                except AgentError as exc:
                    log.warning(
                        "demo_phone_checkin_failed", device_id=config.device_id, error=str(exc)
                    )
                else:
                    done += 1
        self.checkins += done
        return done

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # a damaged state file must not end the demo's phones
                log.exception("demo_phones_cycle_failed")

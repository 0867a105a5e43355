import json

import structlog

from spillguard.core.logging import configure_logging


def test_a_logged_exception_keeps_its_frames_and_types_but_not_its_message(capsys) -> None:
    configure_logging("INFO", json=True)
    secret = "jane.doe@example.com 07700 900123"
    try:
        try:
            raise KeyError(secret)
        except KeyError as inner:
            raise ValueError(f"bad row: {secret}") from inner
    except ValueError as exc:
        structlog.get_logger("test").error("failed", error=type(exc).__name__, exc_info=exc)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert secret not in json.dumps(line)
    assert "07700" not in line["exception"]
    text = line["exception"]
    assert text.index("KeyError") < text.index("ValueError")  # the chain, oldest first
    assert "test_logging_exceptions.py" in text and "raise ValueError" in text

"""A table's billing mode and provisioned capacity, as DynamoDB's CreateTable takes them.

The engine only stores them: a PROVISIONED table keeps its mode and units through
``describe_table``, backups (the manifest's ``settings["billing"]``) and restores, so a
client that created it sees what it asked for. Nothing is enforced yet: no request is
throttled for exceeding the units (that comes with the control plane).

The stored form (the table record's ``billing``)::

    {"mode": "PROVISIONED", "read_capacity_units": 5, "write_capacity_units": 5}
    {"mode": "PAY_PER_REQUEST"}

A record without ``billing`` (tables created before this, or through the engine without
one) is PAY_PER_REQUEST.
"""

from __future__ import annotations

from typing import Any

from .errors import ValidationException

__all__ = ["BILLING_MODES", "PAY_PER_REQUEST", "check_billing", "billing_of", "billing_from_settings"]

PAY_PER_REQUEST = "PAY_PER_REQUEST"
BILLING_MODES = ("PROVISIONED", PAY_PER_REQUEST)
# DynamoDB's range for ReadCapacityUnits / WriteCapacityUnits (API Reference,
# ProvisionedThroughput: "Valid Range: Minimum value of 1").
MIN_CAPACITY_UNITS = 1


def check_billing(billing: Any) -> dict:
    """The stored form of ``billing`` (see the module docstring), or ValidationException
    naming what is wrong: an unknown mode, units given for PAY_PER_REQUEST, or missing or
    non-positive units for PROVISIONED."""
    if not isinstance(billing, dict):
        raise ValidationException(f"billing must be a dict, got {type(billing).__name__}")
    mode = billing.get("mode")
    if mode not in BILLING_MODES:
        raise ValidationException(
            f"billing mode must be one of {', '.join(BILLING_MODES)}, got {mode!r}")
    read, write = billing.get("read_capacity_units"), billing.get("write_capacity_units")
    if mode == PAY_PER_REQUEST:
        if read is not None or write is not None:
            raise ValidationException(
                "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
        return {"mode": mode}
    if read is None or write is None:
        raise ValidationException(
            "One or more parameter values were invalid: ReadCapacityUnits and "
            "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    for name, units in (("readCapacityUnits", read), ("writeCapacityUnits", write)):
        if isinstance(units, bool) or not isinstance(units, int) or units < MIN_CAPACITY_UNITS:
            raise ValidationException(
                f"1 validation error detected: Value '{units}' at "
                f"'provisionedThroughput.{name}' failed to satisfy constraint: Member must "
                f"have value greater than or equal to {MIN_CAPACITY_UNITS}")
    return {"mode": mode, "read_capacity_units": read, "write_capacity_units": write}


def billing_of(record_or_description: dict) -> dict:
    """The billing of a table record or description (PAY_PER_REQUEST when absent)."""
    billing = record_or_description.get("billing")
    return dict(billing) if isinstance(billing, dict) else {"mode": PAY_PER_REQUEST}


def billing_from_settings(settings: Any) -> dict | None:
    """The billing a backup manifest's ``settings`` recorded, for the restored table; None
    when it recorded none (a backup taken before billing was kept: PAY_PER_REQUEST) or
    one this module would not accept (a manifest is untrusted input; the restore goes on)."""
    recorded = settings.get("billing") if isinstance(settings, dict) else None
    if recorded is None:
        return None
    try:
        return check_billing(recorded)
    except ValidationException:
        return None

"""What the meters' firmware refuses, as the logger learned it: the registers each plan
avoids and the fields left out of the readings (from the file beside the store, only read)."""

from __future__ import annotations

from campus_energy.config import Config, MeterConfig
from campus_energy.core.planner import Refusals, plan_profile, profile_fingerprint
from campus_energy.meters.learned import DeviceKey, Learned, learned_plans_path, read_book
from campus_energy.meters.polling import describe_plan, describe_refusals
from campus_energy.ops.doctor.checks import Context, Result, Status, plural
from campus_energy.ops.doctor.checks.devices import refused_fields_fix


def _plan_result(config: Config, meter: MeterConfig, learned: Learned) -> Result:
    profile = config.profile_of(meter)
    refusals = learned.refusals
    plan = plan_profile(profile, config.bus(meter.bus).cost_model, refusals)
    title = f"plan {meter.id}"
    requests = f"{plural(len(plan), 'request')}: {describe_plan(plan)}"
    when = f", learned {learned.learned_at}" if learned.learned_at else ""
    avoided = refusals.without_fields(refusals.fields)
    parts = []
    if avoided:
        parts.append(
            f"the firmware refuses {describe_refusals(avoided, profile)}; the plan avoids them"
        )
    if refusals.fields:
        left_out = describe_refusals(Refusals(fields=refusals.fields), profile)
        parts.append(f"the firmware refuses {left_out}: left out of its readings")
    detail = f"{'; '.join(parts)} ({requests}{when})"
    if refusals.fields:
        return Result(Status.WARN, title, detail, refused_fields_fix(meter))
    return Result(Status.OK, title, detail)


async def learned_plans(ctx: Context) -> list[Result]:
    """Each meter whose firmware the logger found refusing registers or fields."""
    config = ctx.config
    path = learned_plans_path(config.storage.path)
    try:
        book = read_book(path)
    except (OSError, ValueError) as exc:
        return [
            Result(
                Status.WARN,
                "plans",
                f"cannot read what the meters refuse: {exc}",
                f"remove {path}: the logger learns it again (a few refused requests per meter)",
            )
        ]
    results = []
    for meter in config.meters:
        learned = book.get(DeviceKey(meter.bus, meter.unit, meter.profile))
        if learned is None or not learned.refusals:
            continue
        if learned.fingerprint == profile_fingerprint(config.profile_of(meter)):
            results.append(_plan_result(config, meter, learned))  # else: learned again
    if not results:
        return [Result(Status.OK, "plans", "no meter's firmware has refused a read")]
    return results

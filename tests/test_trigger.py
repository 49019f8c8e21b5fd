"""One trigger value, checked once: Trigger's constructor is the only place its fields are
validated; every door (CLI flag, JSON field, Python call) reports the same reason in its words."""
import math

import pytest
import torch

from scratchpad import ModelConfig, UserError, build_model
from scratchpad.model import open_lengths
from scratchpad.trigger import TAU_MAX, Trigger, TriggerError, TriggerRows, check_rate


@pytest.mark.parametrize("tau, want", [(None, math.inf), ("inf", math.inf), (" Off ", math.inf), ("none", math.inf),
                                       (0, 0.0), ("1.5", 1.5), (TAU_MAX, TAU_MAX), (math.inf, math.inf)])
def test_tau_forms(tau, want):
    assert Trigger(tau).tau == want and isinstance(Trigger(tau).tau, float)


@pytest.mark.parametrize("tau", [-1, -0.001, TAU_MAX + 1, 1e39, math.nan, -math.inf, "abc", True, [1.0]])
def test_bad_tau_names_its_field(tau):
    with pytest.raises(TriggerError) as err:
        Trigger(tau)
    assert err.value.field == "tau" and str(err.value).startswith("entropy threshold must be")


def test_every_forms():
    assert Trigger(every=None).every == 0 and Trigger(every=3).every == 3 and Trigger().every == 0


@pytest.mark.parametrize("every", [-1, 2.5, 2.0, "3", True, math.inf])
def test_bad_every_names_its_field(every):
    with pytest.raises(TriggerError) as err:
        Trigger(every=every)
    assert err.value.field == "every" and "scratch_every must be an integer >= 0" in str(err.value)


def test_a_trigger_error_is_a_value_error_and_a_one_line_user_error():
    err = pytest.raises(ValueError, Trigger, -1).value
    assert isinstance(err, UserError) and "\n" not in str(err)
    assert err.reason == f"must be a number in [0, {TAU_MAX:g}] or inf, got -1"


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, "x", True])
def test_bad_rate(rate):
    with pytest.raises(TriggerError) as err:
        check_rate(rate)
    assert err.value.field == "rate"


def test_for_model_bounds_the_stride_and_turns_off_without_scratchpads():
    sp = ModelConfig.preset("tiny-sp-fixed-p4")
    assert Trigger(1.0, sp.longest_patch).for_model(sp) == Trigger(1.0, sp.longest_patch)
    with pytest.raises(TriggerError, match="longest patch") as err:
        Trigger(every=sp.longest_patch + 1).for_model(sp)
    assert err.value.field == "every"
    plain = ModelConfig.preset("tiny-study-A-fixed-mean")
    assert not plain.scratchpad and Trigger(0.0, 99).for_model(plain) == Trigger()


def test_from_rate_checks_the_rate_and_keeps_the_rest_of_its_base():
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4"))
    x = torch.randint(0, 256, (1, 64), generator=torch.Generator().manual_seed(0))
    assert Trigger.from_rate(model, [x], 0.0, Trigger(1.0, 3)) == Trigger(math.inf, 3)
    assert Trigger.from_rate(model, [x], 0.9).tau == 0.0  # P = 4: at most 3/4 of the bytes can scratch
    assert 0 < Trigger.from_rate(model, [x], 0.2).tau < math.inf
    with pytest.raises(TriggerError):
        Trigger.from_rate(model, [x], 1.2)


def test_trigger_is_one_immutable_value():
    t = Trigger(1.5, 4)
    with pytest.raises(AttributeError):
        t.tau = 0.0
    assert t == Trigger("1.5", 4) and t.entropy and not Trigger(every=4).entropy
    assert t.json() == {"entropy_threshold": 1.5, "scratch_every": 4}
    assert Trigger().json() == {"entropy_threshold": "inf", "scratch_every": 0}


def test_trigger_rows_fire_per_slot_as_the_forward_does_and_reset_turns_a_slot_off():
    """Three slots with their own trigger, stepped byte by byte, fire where the parallel forward's
    mask at the same per-row values does, and that is the rule written out by hand."""
    F_, T_ = False, True
    entropy = torch.tensor([[0.5, 1.5, 0.2, 2.5, 1.0, 1.2],   # 1.0 = tau: not above it
                            [0.5, 1.5, 0.2, 2.5, 1.0, 1.2],
                            [0.0, 0.0, 3.0, 0.0, 0.0, 0.0]])
    ends = torch.tensor([[F_, F_, F_, T_, F_, F_]] * 2 + [[F_] * 6])
    triggers = [Trigger(1.0), Trigger(every=3), Trigger(2.0, 4)]
    want = torch.tensor([[F_, T_, F_, F_, F_, T_],    # H > 1, never at the end (byte 3)
                         [F_, F_, T_, F_, F_, F_],    # 3rd byte of a patch (byte 3 ends one)
                         [F_, F_, T_, T_, F_, F_]])   # H > 2 at byte 2, 4th byte of the patch at 3
    model = build_model(ModelConfig.preset("tiny-sp-fixed-p4"))
    tau = torch.tensor([t.tau for t in triggers])
    every = torch.tensor([t.every for t in triggers])
    assert torch.equal(model.scratch_mask(entropy, ends, TriggerRows.of(tau, every, entropy)), want)

    rows = TriggerRows.allocate(3, "cpu", torch.float32)
    for slot, trigger in enumerate(triggers):
        rows.set(slot, trigger)
    open_len = open_lengths(ends)

    def stepped():  # the decode step's call, one byte for every slot at a time -> [3, 6]
        return torch.stack([rows.fires(entropy[:, t], open_len[:, t]) & ~ends[:, t] for t in range(6)], 1)

    assert torch.equal(stepped(), want) and rows.entropy.tolist() == [True, False, True]
    rows.reset(1)
    rows.reset(2)
    fresh = TriggerRows.allocate(3, "cpu", torch.float32)
    assert all(torch.equal(a[1:], b[1:]) for a, b in zip(rows.tensors(), fresh.tensors()))
    assert torch.equal(stepped(), want * torch.tensor([[True], [False], [False]]))
    assert rows.entropy.tolist() == [True, False, False]

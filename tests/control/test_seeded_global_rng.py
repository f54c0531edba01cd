"""seeded_global_rng (engine/control/same_noise.py): for one pipeline call, what draws from
torch's global generator comes from the job's seed, and the generator's state before the
call comes back after it, on the CPU through the CPU generator alone."""

from __future__ import annotations

import pytest
import torch

from engine.control.same_noise import seeded_global_rng

CPU = torch.device("cpu")


def test_draws_inside_are_those_of_the_seed() -> None:
    with seeded_global_rng(1234, CPU):
        inside = torch.randn(16)
    torch.manual_seed(1234)
    torch.testing.assert_close(inside, torch.randn(16), rtol=0, atol=0)


def test_the_global_generator_continues_as_if_the_call_had_not_drawn() -> None:
    torch.manual_seed(7)
    expected = torch.randn(8)
    torch.manual_seed(7)
    with seeded_global_rng(99, CPU):
        torch.randn(1000)
    torch.testing.assert_close(torch.randn(8), expected, rtol=0, atol=0)


def test_the_state_comes_back_when_the_call_fails() -> None:
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError), seeded_global_rng(5, CPU):
        torch.randn(3)
        raise RuntimeError("the pipeline failed")
    assert torch.equal(torch.get_rng_state(), before)


def test_two_jobs_with_one_seed_draw_alike_whatever_ran_between() -> None:
    with seeded_global_rng(42, CPU):
        first = torch.rand(5)
    torch.rand(77)  # other work moves the global generator on
    with seeded_global_rng(42, CPU):
        second = torch.rand(5)
    torch.testing.assert_close(first, second, rtol=0, atol=0)

from rtsim.core.ot_puzzles import compose_vs_stepwise, dopt_puzzle, tp2_counterexample


def test_dopt_puzzle_diverges_and_the_fix_converges() -> None:
    r = dopt_puzzle()
    assert r.sites == {"site 1 (dOPT)": "bc", "site 2": "xbc", "site 1 (fixed)": "xbc"}
    assert not r.converged


def test_tp2_counterexample_diverges() -> None:
    r = tp2_counterexample()
    assert r.sites == {"site A": "axyc", "site B": "ayxc"}


def test_compose_vs_stepwise_matches_facts() -> None:
    r = compose_vs_stepwise()
    assert r.sites == {"step by step": "yq", "composed": "qy"}

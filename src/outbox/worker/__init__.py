"""Delivery: the claim loop and its supervised helpers (worker/loop.py), one
attempt per claim (worker/attempt.py), crash recovery (worker/sweeper.py) and
the group commit of results (worker/recorder.py); the retry and recovery
policies (worker/policy.py). The package re-exports nothing, so that a command
that needs a policy does not load the worker and delivery."""

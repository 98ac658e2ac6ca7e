"""Operator tools: `outbox doctor` (doctor.py, checks.py), `outbox smtp-test`
(smtp_test.py) and `outbox support-bundle` (bundle.py)."""

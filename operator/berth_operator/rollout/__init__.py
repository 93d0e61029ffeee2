"""Rollouts: how a new revision replaces the stable one -- the canary plan and its analysis."""

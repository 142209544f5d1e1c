"""Rollout: waves with readiness gates, the live scope, parallel runs, the variations register."""

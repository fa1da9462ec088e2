"""The deployment checklist's phases, one module each, and the pure builders they use."""

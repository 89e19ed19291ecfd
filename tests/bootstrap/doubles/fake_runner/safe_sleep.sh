#!/bin/bash
# Fake safe_sleep.sh: the real one sleeps without `sleep` (which some images lack); the effect is the same.
sleep "$1"

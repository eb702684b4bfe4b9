"""Eval suites and their runner: is the system getting better by its own loops?"""

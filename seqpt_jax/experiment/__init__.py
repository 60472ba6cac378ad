"""Reproduction experiments (`seqpt experiment`): arms as gin files, savings, claims, reports.

    gin/experiments/<name>/<arm>.gin    one training run per arm (models/ + runs/ gins composed)
    gin/experiments/<name>/scale_<s>.gin sizes and budgets per scale (demo | cpu | paper | test)

Modules: `savings` (the definitions every number follows), `spec` (reading the arms out of
gin), `runner` (runs arms in dependency order, resumable), `claims` and `report`.
"""

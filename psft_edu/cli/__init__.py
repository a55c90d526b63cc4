"""The command line, the top layer: ``python -m psft_edu <command>`` (:mod:`~psft_edu.cli.main`, one handler per
command) and the flags built from the config dataclasses (:mod:`~psft_edu.cli.flags`: the config *is* the CLI).
It may import every other layer; nothing imports it.
"""

"""The node runtime: message schemas and their wire codec, bus, node, launcher, clock,
config validation, episode files, recorder and the ``reflexarc`` command.

It imports nothing of the robot, the simulators, the models or the planner
(docs/architecture.md, "Layers"); an import contract checks that in CI.
"""

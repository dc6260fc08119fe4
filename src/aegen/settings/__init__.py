"""The settings a user chooses, each defined once: how a model is trained (`TrainSettings`)
and how a run is evaluated; CLI flags, config keys, keyword arguments and help come from them.
"""

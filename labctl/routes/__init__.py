"""Routes to container subnets: the kernel's route tables on macOS and Linux behind one
interface (``tables``), their parsers (``parse``), conflict analysis (``analysis``), labctl's
records (``records``), planners producing one privileged batch (``planner``) and boot-time
persistence (``persist``)."""

"""What every stage runs on: where things live (config), this machine (hardware), the tool environments
(envs), long-running tool calls (jobs), the stage contract (stage), completion markers (markers), progress
views (progress), the process policy (guard), failure explanations (failures) and the machine report (doctor).
Nothing here imports a stage package or camp.ui."""

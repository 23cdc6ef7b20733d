"""What molvae's folders hold: the file names of model, training-run and optimization-run
directories. Every other module spells them through these constants; this one imports
nothing, so that anything (the command line's entry point included) can read them.
"""

# A model directory (MolVAE.save), which a training run directory also is.
CONFIG_FILE = "config.json"  # {"model": ..., "training": ...}; an optimization run's settings too
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.safetensors"

# A training run (molvae train).
RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.csv"
DATA_SUMMARY_FILE = "data_summary.json"
RUN_INFO_FILE = "run_info.json"  # package versions and hardware; optimization runs write one too

#: Held by the process writing a run directory (:func:`molvae.checkpoint.lock_run_dir`).
LOCK_FILE = ".molvae.lock"

# An optimization run (molvae optimize).
EVALUATIONS_FILE = "evaluations.csv"
STATE_FILE = "state.json"
JOURNAL_FILE = "scores.jsonl"
BEST_FILE = "best.csv"
BEST_SDF = "best.sdf"
PARETO_FILE = "pareto.csv"
PROGRESS_PLOT = "progress.png"
BEST_PLOT = "best.png"
BASELINES_DIR = "baselines"

#: Every file an optimization run writes into its directory.
OPTIMIZATION_FILES = (
    CONFIG_FILE,
    RUN_INFO_FILE,
    EVALUATIONS_FILE,
    STATE_FILE,
    JOURNAL_FILE,
    BEST_FILE,
    BEST_SDF,
    PARETO_FILE,
    PROGRESS_PLOT,
    BEST_PLOT,
    LOCK_FILE,
)

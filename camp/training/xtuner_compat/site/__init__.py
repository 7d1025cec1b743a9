"""Put on PYTHONPATH of XTuner Jobs only (see camp.xtuner_compat): holds their sitecustomize.py."""

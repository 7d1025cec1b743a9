"""The UI layer: views over the headless core (progress bars, chat widget, Streamlit demo).
The core never imports this package at module level."""


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill), where widgets render."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"

"""``python -m openimagen.serve --model DIR ...``: the same as ``openimagen serve``.

It runs ``python -m openimagen serve ...`` in this process (:mod:`runpy`), so the serving
package, which sits below the command line in the layers, imports nothing from it.
"""

import runpy
import sys

if __name__ == "__main__":
    sys.argv[1:1] = ["serve"]
    runpy.run_module("openimagen", run_name="__main__", alter_sys=True)

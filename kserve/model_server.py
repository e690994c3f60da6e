"""Container entry point of the civicsense-mlflow runtime (the logic is civicsense.serving.server).

KServe starts it as `python kserve/model_server.py --model_name=NAME --model_dir=/mnt/models
--http_port=8080`; locally, `civicsense serve` does the same. This folder is not a Python package
(no __init__.py): a package named `kserve` here would shadow the KServe SDK.
"""

from civicsense.serving.server import main

if __name__ == "__main__":
    main()

"""Container entry point of the civicsense-mlflow runtime (the logic is civicsense.serving).

KServe starts it as `python kserve/model_server.py --model_name=NAME --model_dir=/mnt/models
--http_port=8080`; locally, `civicsense serve` does the same. This folder must never become a
Python package named `kserve`: it would shadow the KServe SDK.
"""

from civicsense.serving import main

if __name__ == "__main__":
    main()

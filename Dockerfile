# offline-recall's image: what every Kubeflow task and every Beam worker (Dataflow, Flink) runs.
# The same pins as `make install`. Python 3.11: TFX's own 1.15 image is Python 3.10.
#   make image IMAGE=gcr.io/my-project/offline-recall:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3

WORKDIR /opt/offline-recall

# Dependencies first, so a code change rebuilds only the last layers.
COPY requirements.txt constraints.txt ./
RUN pip install -U pip wheel 'setuptools<70' \
 && pip install --ignore-requires-python -r requirements.txt -c constraints.txt

COPY setup.py pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY components ./components
COPY trainer ./trainer
COPY schema ./schema
RUN pip install --ignore-requires-python --no-deps . \
 && python -c "import offline_recall.pipeline.cli, tfx, tensorflow_transform, faiss, numba" \
 && python -c "from offline_recall.components.recall import exact; exact.warm_up()" \
 && pip check

ENTRYPOINT ["offline-recall"]
CMD ["--help"]

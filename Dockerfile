# offline-recall's worker image: what every Kubeflow task, every Beam worker (Dataflow, Flink) and
# the CLI run. Built from the wheelhouse with no network:
#   make image IMAGE=gcr.io/my-project/offline-recall:0.1.0     (runs `make wheels` first)
# Runtime dependencies only (requirements.txt at constraints.txt's pins): no orchestrator, no test
# tool. Python 3.11 (TFX's own 1.15 image is Python 3.10).
#
# Entrypoints: Beam's SDK harness boot, so Dataflow and Flink start it as a worker
# (--sdk_container_image); a KFP task sets its own command (TFX's kubeflow_v2_run_executor);
# the CLI is `docker run --entrypoint offline-recall IMAGE run ...`.

# Beam's boot program must match the Beam SDK installed below (apache-beam==2.56.0).
FROM apache/beam_python3.11_sdk:2.56.0 AS beam

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=3

COPY --from=beam /opt/apache/beam /opt/apache/beam

COPY requirements.txt constraints.txt /tmp/install/
COPY wheelhouse /tmp/install/wheelhouse
RUN pip install --no-index --find-links /tmp/install/wheelhouse --ignore-requires-python \
        -r /tmp/install/requirements.txt -c /tmp/install/constraints.txt \
 && pip install --no-index --find-links /tmp/install/wheelhouse --ignore-requires-python \
        --no-deps offline-recall \
 && rm -rf /tmp/install \
 # TensorFlow's C++ headers (220 MB) only build custom ops; nothing here compiles one.
 && rm -rf "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tensorflow/include" \
 && python -c "import offline_recall.pipeline.cli, tfx, tensorflow_transform, faiss, numba" \
 && python -c "from offline_recall.components.recall import exact; exact.warm_up()" \
 && pip check

# Not root: a worker or task needs no privilege, and object stores are reached with credentials.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin recall
USER 10001
WORKDIR /home/recall

ENTRYPOINT ["/opt/apache/beam/boot"]

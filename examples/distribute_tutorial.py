"""The seed's tutorial (py-zmq-pipeline) in Python 3 on chronopipe.distribute: a metadata worker,
two task types (MY_TASK_TYPE runs after every MYTSK task is acknowledged), a multithreaded and
a single-threaded worker, a collector; 200 tasks of 1 ms on worker processes, or on Ray actors
with ``--mode ray`` (a local Ray, or the cluster RAY_ADDRESS names). docs/distribute.md.
"""

import argparse
import time
from collections import Counter

import chronopipe.distribute as zmqpipeline

zmqpipeline.TaskType.register_type("MYTSK")
zmqpipeline.TaskType.register_type("MY_TASK_TYPE")


class MyMetaData(zmqpipeline.MetaDataWorker):
    endpoint = zmqpipeline.EndpointAddress("ipc://metaworker.ipc")

    def get_metadata(self):
        return {"meta_variable": "my value"}


class MyTask(zmqpipeline.Task):
    task_type = zmqpipeline.TaskType("MYTSK")
    endpoint = zmqpipeline.EndpointAddress("ipc://worker.ipc")
    dependencies = []
    n_count = 0

    def handle(self, data, address, msgtype):
        self.n_count += 1
        if self.n_count >= 100:
            self.is_complete = True  # complete after 100 executions
        return {"workload": 0.001, "meta_variable": data["meta_variable"]}


class MyDependentTask(MyTask):
    task_type = zmqpipeline.TaskType("MY_TASK_TYPE")
    endpoint = zmqpipeline.EndpointAddress("ipc://worker2.ipc")
    dependencies = [zmqpipeline.TaskType("MYTSK")]


class MyWorker(zmqpipeline.MultiThreadedWorker):
    task_type = zmqpipeline.TaskType("MYTSK")
    endpoint = zmqpipeline.EndpointAddress("ipc://worker.ipc")
    collector_endpoint = zmqpipeline.EndpointAddress("ipc://collector.ipc")
    n_threads = 10

    def handle_execution(self, data, *args, **kwargs):
        return data  # forward all received data to a thread

    def handle_thread_execution(self, data, index):
        time.sleep(data["workload"])
        return {"thread": index}


class MyDependentWorker(zmqpipeline.SingleThreadedWorker):
    task_type = zmqpipeline.TaskType("MY_TASK_TYPE")
    endpoint = zmqpipeline.EndpointAddress("ipc://worker2.ipc")
    collector_endpoint = zmqpipeline.EndpointAddress("ipc://collector.ipc")

    def handle_execution(self, data, *args, **kwargs):
        time.sleep(data["workload"])
        return {"meta_variable": self.metadata["meta_variable"]}


class MyCollector(zmqpipeline.Collector):
    endpoint = zmqpipeline.EndpointAddress("ipc://collector.ipc")
    ack_endpoint = zmqpipeline.EndpointAddress("ipc://collector_ack.ipc")

    def __init__(self):
        self.counts = Counter()
        self.finished = []

    def handle_collection(self, data, task_type, msgtype):
        self.counts[task_type] += 1

    def handle_finished(self, data, task_type):
        self.finished.append(task_type)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the seed's tutorial on chronopipe.distribute")
    parser.add_argument("--mode", choices=["processes", "ray", "threads"], default="processes")
    mode = parser.parse_args().mode
    dist = zmqpipeline.Distributor(
        zmqpipeline.EndpointAddress("ipc://collector.ipc"),
        zmqpipeline.EndpointAddress("ipc://collector_ack.ipc"),
        receive_metadata=True,
        metadata_endpoint=zmqpipeline.EndpointAddress("ipc://metaworker.ipc"),
    )
    dist.register_task(MyTask)
    dist.register_task(MyDependentTask)
    collector = MyCollector()
    started = time.monotonic()
    report = dist.run(workers={MyWorker: 2, MyDependentWorker: 2}, collector=collector, metadata=MyMetaData(),
                      mode=mode, max_unacked=10)
    print(f"acknowledged {report.acknowledged} tasks in {time.monotonic() - started:.2f} s")
    for task_type, count in sorted(collector.counts.items()):
        print(f"{task_type}: {count} collected")
    print("finished in order:", ", ".join(collector.finished))

"""The seed's SortedQueueMultiplexer usage, in Python 3: two inputs merged by timestamp."""

import queue

from chronopipe import Runtime, SortedQueueMultiplexer

# For one-to-many, or many-to-one multiplexing, .run() can be safely chained to the constructor
multiplexer = SortedQueueMultiplexer(sort_key="timestamp", sort_direction="min", max_size=100).run()

input_queue_1 = multiplexer.input_queue()  # generate new input_queue
input_queue_2 = multiplexer.input_queue(Runtime().manager().Queue())  # register external input_queue
output_queue = multiplexer.output_queue()  # multiple output queues can be registered
multiplexer.run()  # many-to-many multiplexing requires registering queues before .run()

# data in input queues is assumed to be ordered
input_queue_1.put({"timestamp": 1010})
input_queue_1.put({"timestamp": 1020})
input_queue_1.put({"timestamp": 1030})

input_queue_2.put({"timestamp": 1019})
input_queue_2.put({"timestamp": 1020})
input_queue_2.put({"timestamp": 1021})

# mark termination of each input queue with queue.Empty (or chronopipe.END)
input_queue_1.put(queue.Empty)
input_queue_2.put(queue.Empty)

while True:
    item = output_queue.get()  # 1010, 1019, 1020, 1020, 1021, 1030
    if item == queue.Empty:
        break  # a single queue.Empty is returned when all input queues have been terminated
    print(item)

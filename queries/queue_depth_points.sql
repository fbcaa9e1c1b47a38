-- Broker-reported depth per destination, summed over the labels of each timestamp.
SELECT coalesce(messaging_system, '') AS system, destination, metric_name, time_unix_nano, sum(value) AS depth
FROM metric_points
WHERE destination IS NOT NULL
  AND metric_name IN ('messaging.queue.depth', 'rabbitmq.message.current', 'kafka.consumer_group.lag_sum',
                      'kafka.consumer_group.lag', 'ApproximateNumberOfMessagesVisible',
                      'aws.sqs.approximate_number_of_messages_visible')
  AND time_unix_nano >= $1 AND time_unix_nano < $2
GROUP BY ALL
ORDER BY time_unix_nano;

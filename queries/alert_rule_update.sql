UPDATE alert_rules SET rule = ?, updated_unix_nano = ? WHERE id = ?;

-- When commit $1 happened (unix ns $2).
INSERT INTO commits VALUES ($1, $2);

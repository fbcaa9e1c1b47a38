SET GLOBAL threads = ?;

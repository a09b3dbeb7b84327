module example.org/flamenco-mini

go 1.23

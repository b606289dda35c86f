// layering tests: to come

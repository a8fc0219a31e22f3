<?php
// One line: which app this is and the PHP it runs on.
echo getenv("APP_NAME") . " running on PHP " . PHP_VERSION . "\n";

module zt.lab/bench/loadgen

go 1.22

module zt.lab/bench/handshaker

go 1.25

#!/bin/sh
# Capstan lab stand-in for a CNI plugin binary (a TEST DOUBLE, never ship it): the kubelet stand-in
# only checks that the plugins a CNI config names exist; the lab's pod network is the kubelet
# stand-in's own (see test/lab/README.md). Called as a plugin, it fails as CNI plugins report errors.
echo '{"cniVersion":"1.0.0","code":100,"msg":"Capstan lab stand-in CNI plugin: not a real plugin"}'
exit 1

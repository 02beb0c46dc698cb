#!/usr/bin/env python3
"""The thesaurus-scraper's peer: Scrapy crawling one locally served site, with text extraction.

Usage: scrapy_crawl.py --start URL [--concurrency N] [--per-host N] [--delay S]
Follows links within the start URL's host:port, extracts each HTML page's visible text
(everything under <body> but script and style) and counts its words, like the crawler does
before it stores a page. Prints one JSON line at the end: pages, words, elapsed seconds,
pages/s and the process's CPU seconds (user + sys). Loopback only.
"""
import argparse
import json
import re
import resource
import time
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.linkextractors import LinkExtractor

WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


class Site(scrapy.Spider):
    name = "site"

    def __init__(self, start, **kw):
        super().__init__(**kw)
        self.start_urls = [start]
        netloc = urlsplit(start).netloc
        self.allowed_domains = [urlsplit(start).hostname]
        self.links = LinkExtractor(allow_domains=[netloc], deny_extensions=None,
                                   tags=("a", "area"), attrs=("href",))
        self.pages = 0
        self.words = 0

    def parse(self, response):
        if "html" not in response.headers.get(b"Content-Type", b"").decode("latin-1"):
            return
        self.pages += 1
        text = " ".join(response.xpath(
            "//body//text()[not(ancestor::script) and not(ancestor::style)]").getall())
        self.words += len(WORD.findall(text))
        for link in self.links.extract_links(response):
            if urlsplit(link.url).netloc == urlsplit(response.url).netloc:
                yield response.follow(link.url, callback=self.parse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", required=True)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    assert urlsplit(a.start).hostname.startswith("127."), "loopback only"
    process = CrawlerProcess(settings={
        "LOG_LEVEL": "ERROR",
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": a.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": a.per_host,
        "CONCURRENT_REQUESTS_PER_IP": 0,
        "DOWNLOAD_DELAY": a.delay,
        "RETRY_ENABLED": True,
        "TELNETCONSOLE_ENABLED": False,
        "COOKIES_ENABLED": False,
        "DOWNLOAD_MAXSIZE": 4 << 20,
        "DEPTH_PRIORITY": 1,
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
    })
    crawler = process.create_crawler(Site)
    t0 = time.time()
    process.crawl(crawler, start=a.start)
    process.start()
    elapsed = time.time() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    spider = crawler.spider
    print(json.dumps({"pages": spider.pages, "words": spider.words, "seconds": round(elapsed, 2),
                      "pages_per_s": round(spider.pages / elapsed, 1),
                      "cpu_s": round(ru.ru_utime + ru.ru_stime, 2)}))


if __name__ == "__main__":
    main()
